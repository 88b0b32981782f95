"""DeAR (Ma et al., CVPR 2026): attribute tokens, role-based attention masks, task-adaptive fusion."""
from trainers.dear.trainer import DeAR  # noqa: F401,E402  (registers the trainer)
