"""Deployment: manifest validation and the KServe canary rollout.

The only part of ``checkout_recs`` allowed to import the kubernetes client (``kube.py``); it
never imports kfp or kserve.
"""
