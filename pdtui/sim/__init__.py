"""A simulated engine that looks like `vllm serve` from outside (demo mode and CI test double).

Start it like vLLM: `python -m pdtui.sim serve MODEL --port P --kv-transfer-config JSON ...`.
"""
