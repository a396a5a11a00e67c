"""Benchmark harness: the gateway against reference bridges, under identical load, one run.

``python -m bench`` (``make bench``) starts one nats-server, then for each target (``streamgw
serve``, :mod:`bench.naive_bridge` and with ``--lean`` :mod:`bench.lean_bridge`) measures frames
per CPU-second at maximum rate, CPU and latency at real-time call counts, RSS per 1000 idle
streams and, when the gateway accepts ``--workers``, scaling over two cores. Load comes from
:mod:`bench.loadgen` and delivery is checked by :mod:`bench.verify`, each in a process of its own;
the target is pinned to one core and everything else to the other. The gateway is a black box:
only its command line, the wire format and the NATS subjects are used. See ``bench/RESULTS.md``.
"""
