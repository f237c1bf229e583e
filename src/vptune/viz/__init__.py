"""Pictures of what a task model does: attention maps and attention rollout (:mod:`vptune.viz.attention`)."""
