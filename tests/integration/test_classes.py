"""Workflows as methods of ``@DBOS.dbos_class()`` classes, on both backends."""

from __future__ import annotations

import asyncio

import pytest

from perdure import DBOS, DBOSConfiguredInstance, SetWorkflowID
from perdure.error import DBOSException
from tests.integration.system_tables import mark_pending, relaunch


def test_instance_method_workflow_records_class_and_config_name(dbos: type[DBOS]) -> None:
    @DBOS.dbos_class()
    class Greeter(DBOSConfiguredInstance):
        def __init__(self, config_name: str, greeting: str) -> None:
            self.greeting = greeting
            super().__init__(config_name)

        @DBOS.step()
        def decorate(self, name: str) -> str:
            return f"*{name}*"

        @DBOS.workflow()
        def greet(self, name: str) -> str:
            return f"{self.greeting}, {self.decorate(name)} ({DBOS.workflow_id})"

    english = Greeter("english", "Hello")
    french = Greeter("french", "Bonjour")
    with SetWorkflowID("greet-en"):
        assert english.greet("ann") == "Hello, *ann* (greet-en)"
    with SetWorkflowID("greet-fr"):
        assert french.greet("bob") == "Bonjour, *bob* (greet-fr)"

    status = DBOS.get_workflow_status("greet-fr")
    assert status is not None
    assert (status.status, status.class_name, status.config_name) == (
        "SUCCESS",
        Greeter.__qualname__,
        "french",
    )
    # The instance is not part of the recorded input; it is found again by its config name.
    assert status.input == {"args": ("bob",), "kwargs": {}}


def test_start_workflow_of_an_instance_method(dbos: type[DBOS]) -> None:
    @DBOS.dbos_class()
    class Counter(DBOSConfiguredInstance):
        def __init__(self, config_name: str, start: int) -> None:
            self.start = start
            super().__init__(config_name)

        @DBOS.workflow()
        def add(self, x: int, *, times: int = 1) -> int:
            return self.start + x * times

    counter = Counter("from-ten", 10)
    handle = DBOS.start_workflow(counter.add, 3, times=2)
    assert handle.get_result() == 16
    status = handle.get_status()
    assert (status.class_name, status.config_name, status.input) == (
        Counter.__qualname__,
        "from-ten",
        {"args": (3,), "kwargs": {"times": 2}},
    )


def test_classmethod_and_staticmethod_workflows(dbos: type[DBOS]) -> None:
    @DBOS.dbos_class()
    class Maths:
        factor = 3

        @classmethod
        @DBOS.workflow()
        def scale(cls, x: int) -> int:
            return cls.factor * x

        @staticmethod
        @DBOS.workflow()
        def negate(x: int) -> int:
            return -x

    with SetWorkflowID("cm"):
        assert Maths.scale(5) == 15
    with SetWorkflowID("sm"):
        assert Maths.negate(5) == -5
    assert DBOS.start_workflow(Maths.scale, 2).get_result() == 6
    assert DBOS.start_workflow(Maths.negate, 2).get_result() == -2

    cm = DBOS.get_workflow_status("cm")
    sm = DBOS.get_workflow_status("sm")
    assert cm is not None
    assert sm is not None
    assert (cm.status, cm.class_name, cm.config_name, cm.input) == (
        "SUCCESS",
        Maths.__qualname__,
        None,
        {"args": (5,), "kwargs": {}},
    )
    assert (sm.status, sm.config_name, sm.input) == ("SUCCESS", None, {"args": (5,), "kwargs": {}})


def test_async_instance_method_workflow(dbos: type[DBOS]) -> None:
    @DBOS.dbos_class()
    class Shouter(DBOSConfiguredInstance):
        @DBOS.workflow()
        async def shout(self, word: str) -> str:
            await asyncio.sleep(0)
            return f"{self.config_name}:{word.upper()}"

    loud = Shouter("loud")

    async def main() -> str:
        handle = await DBOS.start_workflow_async(loud.shout, "hey")
        return await handle.get_result()

    assert asyncio.run(main()) == "loud:HEY"


def test_recovered_instance_method_runs_on_its_instance(dbos: type[DBOS], db_url: str) -> None:
    runs: list[str] = []

    @DBOS.dbos_class()
    class Account(DBOSConfiguredInstance):
        @DBOS.workflow()
        def deposit(self, amount: int) -> str:
            runs.append(self.config_name)
            return f"{self.config_name}+{amount}"

    Account("alice")
    bob = Account("bob")
    with SetWorkflowID("deposit-bob"):
        assert bob.deposit(5) == "bob+5"
    mark_pending(db_url, "deposit-bob")
    relaunch(db_url)

    assert DBOS.retrieve_workflow("deposit-bob").get_result() == "bob+5"
    assert runs == ["bob", "bob"]


def test_dbos_class_name_argument_is_recorded(dbos: type[DBOS]) -> None:
    @DBOS.dbos_class("Payments")
    class Payer(DBOSConfiguredInstance):
        @DBOS.workflow()
        def pay(self, amount: int) -> int:
            return amount

    with SetWorkflowID("pay-1"):
        assert Payer("main").pay(3) == 3
    status = DBOS.get_workflow_status("pay-1")
    assert status is not None
    assert status.class_name == "Payments"


def test_inherited_method_recovers_on_the_right_subclass_instance(
    dbos: type[DBOS], db_url: str
) -> None:
    runs: list[str] = []

    @DBOS.dbos_class()
    class Base(DBOSConfiguredInstance):
        @DBOS.workflow()
        def who(self) -> str:
            runs.append(type(self).__name__)
            return type(self).__name__

    @DBOS.dbos_class()
    class Left(Base):
        pass

    @DBOS.dbos_class()
    class Right(Base):
        pass

    left = Left("same-name")
    Right("same-name")
    with SetWorkflowID("who-left"):
        assert left.who() == "Left"
    status = DBOS.get_workflow_status("who-left")
    assert status is not None
    assert (status.class_name, status.config_name) == (Left.__qualname__, "same-name")
    mark_pending(db_url, "who-left")
    relaunch(db_url)

    assert DBOS.retrieve_workflow("who-left").get_result() == "Left"
    assert runs == ["Left", "Left"]


def test_method_workflow_without_dbos_class_names_the_decorator(dbos: type[DBOS]) -> None:
    class Forgotten(DBOSConfiguredInstance):
        @DBOS.workflow()
        def run(self, x: int) -> int:
            return x

    with pytest.raises(DBOSException, match=r"@DBOS\.dbos_class"):
        Forgotten("f").run(1)


def test_a_second_class_or_instance_under_one_name_is_refused(dbos: type[DBOS]) -> None:
    @DBOS.dbos_class(class_name="Ledger")
    class Ledger(DBOSConfiguredInstance):
        @DBOS.workflow()
        def post(self) -> str:
            return self.config_name

    Ledger("main")
    with pytest.raises(DBOSException, match="Duplicate instance registration for class 'Ledger'"):
        Ledger("main")  # recovery could not tell which of the two a workflow ran on
    with pytest.raises(DBOSException, match="Duplicate type registration for class 'Ledger'"):

        @DBOS.dbos_class(class_name="Ledger")
        class Other(DBOSConfiguredInstance):
            pass

    DBOS.dbos_class(class_name="Ledger")(Ledger)  # the same class again is no duplicate
    assert Ledger("other").post() == "other"
