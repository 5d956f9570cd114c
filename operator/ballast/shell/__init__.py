"""The imperative shell: observe the world, call the pure decision core, act on its answer.

kopf handlers only ask this layer for work; it reads memory (kopf's indexes), runs contract
checks beside the reconcile, and writes children, routes, status and Events through `ballast.kube`.
"""
