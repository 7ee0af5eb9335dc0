"""Where the moto LocalStack ships (moto-ext 5.1) answers differently from AWS in ways the
Rust SDK refuses, and the stage's moto (5.2) does not: corrected here, at the model."""

from __future__ import annotations

import functools


def install() -> None:
    from moto.ecs.models import Container

    # A task's containers carry cpu/memory copied from the task definition as numbers; the
    # ECS API has them as strings, and aws-sdk-ecs rejects the whole DescribeTasks/RunTask
    # answer ("type mismatch: expected string").
    original_init = Container.__init__

    @functools.wraps(original_init)
    def init(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        for name in ("cpu", "memory"):
            value = getattr(self, name, None)
            if value is not None and not isinstance(value, str):
                setattr(self, name, str(value))

    Container.__init__ = init
