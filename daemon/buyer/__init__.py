"""The buyer: `BuyerDaemon` (lifecycle, queries, RPC routes) around a `Scheduler` (the job state
machine), a `BuyerStore` (every SQL statement) and a `NodeRegistry` (the swarm as heard);
the map coordinator, the narrator and the payer attach to it (`attach_*`)."""

from pylon.daemon.buyer.daemon import BuyerDaemon, run_buyer
from pylon.daemon.buyer.scheduler import ActiveJob, Attempt, RunTracker, Scheduler, SubmitError

__all__ = ["ActiveJob", "Attempt", "BuyerDaemon", "RunTracker", "Scheduler", "SubmitError", "run_buyer"]
