"""The demo: `astrogan demo`'s whole road (`run`), its raw pictures (`raw`) and its HTML page (`page`)."""

from astrogan.demo.run import DemoConfig, run_demo

__all__ = ["DemoConfig", "run_demo"]
