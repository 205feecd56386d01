"""The reference model server: a small PyTorch classifier behind KServe V2 REST with dynamic batching.

The only part of meshgate that imports torch; the gateway never imports it.
"""
