"""trainer: a real RL swarm node (identity, hivemind DHT, rounds, GRPO, rollout sharing).

Importing this package stays cheap: torch/transformers/trl are imported only inside
`trainer.model` and `trainer.train`, hivemind only in `trainer.dht`, web3 only in
`trainer.coordinator`.
"""
