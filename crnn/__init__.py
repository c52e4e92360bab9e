"""crnn-toolkit: train, compress, export, quantize, benchmark and serve a CRNN text-line recognizer."""

__version__ = "0.1.0"
