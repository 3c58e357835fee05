"""swarmd: a supervisory watchdog daemon for decentralised RL swarm training nodes.

Importing this package must stay cheap: no torch, transformers, hivemind or web3 here.
"""

__version__ = "0.1.0"
