"""promptsep's foundation: what every other package may import.

* :mod:`promptsep.errors`: the exceptions bad user input raises (:class:`InputError` and kin).
* :mod:`promptsep.audio`: reading, writing, resampling and down-mixing audio.
* :mod:`promptsep.release`: the one release format (``config.json`` + ``model.safetensors``),
  atomic writes, weight checksums, strict dataclass configs, checkpoint / hub-id resolution
  and the packaged default checkpoints.
* :mod:`promptsep.cli`: the ``promptsep`` command (``python -m promptsep``), which loads its
  sub-commands lazily.

This package imports nothing of the rest of the project at import time.
"""

__version__ = "0.1.0"
