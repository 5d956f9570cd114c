"""Traffic: the Router protocol (`router.py`), one file per router, and the choice of router (`routers.py`)."""
