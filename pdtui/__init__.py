"""pdtui: a terminal control panel for prefill/decode disaggregated serving (vLLM + LMCache)."""

__version__ = "0.1.0"
