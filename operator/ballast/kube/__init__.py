"""The client layer: the only code that talks to the Kubernetes API server (async, over httpx).

It imports nothing else of Ballast; the shell, the routers and Event posting write through it.
"""
