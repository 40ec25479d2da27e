"""Training every stage of the model on accelerate: resumable, reproducible, pickle-free.
``icportrait train`` drives :class:`~icportrait.training.stages.Stage` with the
:class:`~icportrait.training.trainer.Trainer`."""
