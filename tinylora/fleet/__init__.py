"""Fleet (federated) LoRA on Flower: core (integer aggregation, no network), apps (ServerApp /
ClientApp), secagg (SecAgg+ app pair), deploy (local SuperLink + SuperNodes), command (`tinylora
fleet`). Only apps, secagg and local import Flower; see docs/fleet.md."""
