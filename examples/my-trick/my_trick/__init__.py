"""An lmbudget plug-in package: an algorithm and an optimizer that lmbudget does not ship.

    lmbudget train --model bert-micro --algorithm my_trick:WarmupDepth --budget 20s
    lmbudget train --model bert-micro --algorithm warmup-depth --optimizer signum --budget 20s
"""
from my_trick.signum import Signum, SignumPlugin
from my_trick.warmup_depth import WarmupDepth

__all__ = ["Signum", "SignumPlugin", "WarmupDepth"]
