"""Python extractors for bench/python.sh: a trivial one (the same as the Rust
transfer.absI_max, without its float32 rounding) and a CPU-heavy pure-Python one."""
import numpy as np

from oect.extractors import BaseExtractor, register


@register("bench.abs_i_max")
class AbsIMax(BaseExtractor):
    """max |Id| of the sweep (trivial: the per-step cost is the call itself)"""

    input = "transfer"
    unit = "A"
    params = {}

    def extract_single_step(self, step_data, params):
        return float(np.max(np.abs(step_data["Id"])))


@register("bench.heavy")
class Heavy(BaseExtractor):
    """a pure-Python loop over the sweep, `rounds` times (holds the GIL throughout)"""

    input = "transfer"
    unit = "A"
    params = {"rounds": (200, "passes over the sweep")}

    def extract_single_step(self, step_data, params):
        ids = step_data["Id"].tolist()
        total = 0.0
        for _ in range(params["rounds"]):
            for x in ids:
                total += x * x
        return total
