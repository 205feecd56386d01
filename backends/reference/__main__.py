"""``python -m backends.reference --model NAME --port P ...``: runs the reference model server."""

import sys

from backends.reference.server import serve_main

sys.exit(serve_main(sys.argv[1:]))
