import sys

from backends.reference.server import serve_main

sys.exit(serve_main(sys.argv[1:]))
