"""ECS, ELBv2 and RDS providers that hand every operation to moto.

LocalStack's community core has no ECS, ELBv2 or RDS provider; the moto it ships (moto-ext)
implements all three; a dispatch table sending each operation of the service's model to `call_moto` serves
them, so parsing, errors and account ids are LocalStack's own.
"""

from localstack.services.plugins import Service, aws_provider


class MotoOnly:
    """A provider that implements nothing itself: every operation goes to moto."""

    def __init__(self, service: str):
        self.service = service


def _to_moto(context, _request):
    from localstack.services.moto import call_moto

    return call_moto(context)


def _moto_service(name: str) -> Service:
    from localstack.aws.spec import load_service

    # LocalStack's moto fallback only wraps the operations a provider class declares; these
    # providers declare none, so every operation of the model is routed to moto directly.
    def dispatch_table(_provider):
        return {op: _to_moto for op in load_service(name).operation_names}

    return Service.for_provider(MotoOnly(name), dispatch_table_factory=dispatch_table)


@aws_provider(api="ecs")
def ecs():
    return _moto_service("ecs")


@aws_provider(api="elbv2")
def elbv2():
    return _moto_service("elbv2")


@aws_provider(api="rds")
def rds():
    return _moto_service("rds")
