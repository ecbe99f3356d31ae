"""Speed and memory figures that the benchmark scripts print (never asserted by tests).

Absolute times drift between runs and machines, so every figure is read against something
measured in the same process: a float32 matmul's FLOP/s, the other implementation, or a peer.
"""
