"""DeAR (Ma et al., CVPR 2026): attribute tokens, role-based attention masks, task-adaptive fusion."""
