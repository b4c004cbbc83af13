"""Front doors: KServe v2 REST (``rest``), ops endpoints (``ops``); gRPC is added beside them."""
