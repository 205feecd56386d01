"""Where a request goes once its variant is known: pools, balancers, upstream clients.

The reference model server lives in ``backends.reference`` and is never imported from here,
so the gateway does not need torch.
"""
