"""lmbudget: compare efficient training algorithms for Transformer LMs under a fixed RST budget."""
__version__ = "0.1.0"
