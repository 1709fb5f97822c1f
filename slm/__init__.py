"""slm: a small, private language model over a company's own documents, answering with citations."""

__version__ = "0.1.0"
