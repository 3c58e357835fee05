"""Round clock and reward reporting: the off-chain DHT clock (default) or a real chain."""

from trainer.coordinator.offchain import (
    FIRST_WAIT,
    Coordinator,
    DhtCoordinator,
    schedule_position,
    wait_seconds,
)

__all__ = ["FIRST_WAIT", "Coordinator", "DhtCoordinator", "schedule_position", "wait_seconds"]
