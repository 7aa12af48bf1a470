"""Order checkout that survives a crash: Perdure's durable execution, shown in the terminal.

The demo runs a four-step checkout workflow for one order in a worker process that kills itself
with SIGKILL (think power cut) after a chosen step, by default right after the card is charged.
A second process then calls DBOS.launch(), which finds the unfinished workflow in
./checkout.sqlite and resumes it: the steps that had completed are replayed from their
checkpoints instead of running again (so the card is charged exactly once) and the remaining
steps run. The database is reset at the start of each run, so the demo can be run repeatedly.

Run it from the repository root:  python -m examples.checkout
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from sqlalchemy import text

from perdure import DBOS, SetWorkflowID

DB_FILE = Path("checkout.sqlite").resolve()
ORDER_ID = 42
WORKFLOW_ID = f"order-{ORDER_ID}"
SKU = "perdure-mug"
STEPS = 4
# Set only in the worker process that is meant to die: the step after which it kills itself.
crash_after: int | None = None


# -- the application: one workflow and its steps --------------------------------------------------


def announce(step: int, action: str) -> None:
    """Print the start of a step's line; the step finishes it with "done"."""
    print(f"  [step {step}/{STEPS}] {action} ...", end=" ", flush=True)
    time.sleep(0.2)  # pretend to work, so the output reads at a human pace


@DBOS.transaction()
def set_up_shop() -> None:
    """Create the application's tables (a plain transaction: it runs outside any workflow)."""
    session = DBOS.sql_session
    session.execute(text("CREATE TABLE IF NOT EXISTS inventory (sku TEXT PRIMARY KEY, stock INT)"))
    session.execute(text("CREATE TABLE IF NOT EXISTS orders (order_id INT PRIMARY KEY, sku TEXT)"))
    # Stands in for the payment provider's ledger: one row per charge actually made.
    session.execute(text("CREATE TABLE IF NOT EXISTS charges (order_id INT, cents INT, pid INT)"))
    session.execute(text("INSERT OR IGNORE INTO inventory VALUES (:sku, 5)"), {"sku": SKU})


@DBOS.transaction()
def reserve_inventory(order_id: int, sku: str) -> dict[str, Any]:
    """Take one item out of stock and record the order, committed with its checkpoint."""
    announce(1, f"reserving one {sku} for order {order_id}")
    session = DBOS.sql_session
    session.execute(text("UPDATE inventory SET stock = stock - 1 WHERE sku = :sku"), {"sku": sku})
    session.execute(text("INSERT INTO orders VALUES (:id, :sku)"), {"id": order_id, "sku": sku})
    stock = session.execute(text("SELECT stock FROM inventory WHERE sku = :sku"), {"sku": sku})
    left = stock.scalar_one()
    print(f"done ({left} left in stock)")
    return {"pid": os.getpid(), "stock_left": left}


@DBOS.step()
def charge_card(order_id: int, cents: int, card: str) -> dict[str, Any]:
    """Charge the card (simulated): the one step that must never run twice."""
    announce(2, f"charging ${cents / 100:.2f} to card *{card} for order {order_id}")
    with sqlite3.connect(DB_FILE, timeout=30) as ledger:
        cursor = ledger.execute(
            "INSERT INTO charges VALUES (?, ?, ?)", (order_id, cents, os.getpid())
        )
    ledger.close()
    print(f"done (charge #{cursor.lastrowid})")
    return {"pid": os.getpid(), "charge_id": cursor.lastrowid}


@DBOS.step()
def ship_order(order_id: int) -> dict[str, Any]:
    """Hand the parcel to the courier (simulated)."""
    announce(3, f"handing order {order_id} to the courier")
    tracking = f"TRK-{random.randint(100000, 999999)}"
    print(f"done (tracking {tracking})")
    return {"pid": os.getpid(), "tracking": tracking}


@DBOS.step()
def send_receipt(order_id: int, email: str, tracking: str) -> dict[str, Any]:
    """Email the receipt (simulated)."""
    announce(4, f"emailing the receipt for order {order_id} to {email}")
    print("done")
    return {"pid": os.getpid(), "tracking": tracking}


def after_step(step: int, what: str, result: dict[str, Any]) -> None:
    """Say when a step was replayed rather than run, and crash here if this worker should."""
    # Workflow code re-runs on recovery, so this line shows the replay; a step body would not.
    if result["pid"] != os.getpid():
        pid = result["pid"]
        print(f"  [step {step}/{STEPS}] {what}: done by process {pid}; replayed, not run again")
    if step == crash_after:
        print(f"  *** power cut! process {os.getpid()} is killed (SIGKILL) ***", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)


@DBOS.workflow()
def checkout(order_id: int, card: str, email: str) -> str:
    """Reserve, charge, wait for the warehouse, ship, send the receipt."""
    after_step(1, "inventory reserved", reserve_inventory(order_id, SKU))
    charge = charge_card(order_id, 1800, card)
    after_step(2, f"card charged (charge #{charge['charge_id']})", charge)
    print("  [wait]     the warehouse needs a moment: DBOS.sleep(1) ...", end=" ", flush=True)
    began = time.monotonic()
    DBOS.sleep(1)  # durable: the wake-up time is checkpointed, so a resumed run sleeps less
    print(f"slept {time.monotonic() - began:.1f} s")
    shipment = ship_order(order_id)
    after_step(3, "order shipped", shipment)
    after_step(4, "receipt sent", send_receipt(order_id, email, shipment["tracking"]))
    return f"order {order_id} shipped with tracking number {shipment['tracking']}"


# -- the two worker processes ------------------------------------------------------------------


def configure() -> None:
    """Configure Perdure on ./checkout.sqlite and launch it (which also recovers old work)."""
    # The default for the name "checkout" is this same file; the URL is spelled out only so
    # that PERDURE_SYSTEM_DATABASE_URL, if set, cannot send the demo elsewhere.
    DBOS(config={"name": "checkout", "system_database_url": f"sqlite:///{DB_FILE}"})
    DBOS.launch()


def crashing_worker() -> None:
    """Start the checkout workflow under a fixed ID; ``after_step`` kills this process."""
    print(f"  process {os.getpid()}: DBOS.launch(), then checkout(order {ORDER_ID})")
    configure()
    set_up_shop()
    with SetWorkflowID(WORKFLOW_ID):  # the workflow ID is the idempotency key of the order
        checkout(ORDER_ID, "4242", "ann@example.com")


def recovering_worker() -> None:
    """Only launch: Perdure resumes the PENDING workflow; then wait for its result."""
    print(f"  process {os.getpid()}: DBOS.launch() (no workflow is started by hand)")
    configure()
    result = DBOS.retrieve_workflow(WORKFLOW_ID).get_result()
    status = DBOS.get_workflow_status(WORKFLOW_ID)
    print(f"  workflow {WORKFLOW_ID} is {status.status if status else '?'}: {result}")
    DBOS.destroy()


# -- the narrator: runs the workers and reads the database afterwards --------------------------


def spawn(*args: str) -> int:
    """Run this module as a child process with ``args``; return its exit code."""
    root = Path(__file__).resolve().parent.parent  # so ``-m examples.checkout`` resolves
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}  # a killed child loses no buffered output
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
    sys.stdout.flush()
    command = [sys.executable, "-m", "examples.checkout", *args]
    return subprocess.run(command, env=env, check=False).returncode  # noqa: S603 - our own module


def summary() -> None:
    """Print what the database recorded: the workflow, its checkpoints and the charges."""
    with sqlite3.connect(DB_FILE) as db:
        status, created = db.execute(
            "SELECT status, created_at FROM workflow_status WHERE workflow_id = ?", (WORKFLOW_ID,)
        ).fetchone()
        steps = db.execute(
            "SELECT function_id, function_name, completed_at_epoch_ms FROM operation_outputs"
            " WHERE workflow_id = ? ORDER BY function_id",
            (WORKFLOW_ID,),
        ).fetchall()
        (charges,) = db.execute(
            "SELECT COUNT(*) FROM charges WHERE order_id = ?", (ORDER_ID,)
        ).fetchone()
    db.close()
    print(f"\n== What {DB_FILE.name} says")
    print(f"  workflow {WORKFLOW_ID}: {status}")
    print("  checkpoints (table operation_outputs), seconds after the workflow started:")
    for function_id, name, completed in steps:
        print(f"    {function_id}  {name:<18} {(completed - created) / 1000:6.2f} s")
    verdict = "charged exactly once" if charges == 1 else "WRONG: expected exactly one charge"
    print(f"  charges made for order {ORDER_ID}: {charges}  ({verdict})")


def narrate(crash_at: int) -> int:
    """Run the whole story; return the process exit code."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{DB_FILE}{suffix}").unlink(missing_ok=True)
    print("Perdure checkout demo: a workflow that survives a crash")
    print(f"database: {DB_FILE} (SQLite, fresh for this run)\n")
    print(f"== Process 1 checks out order {ORDER_ID} and will die after step {crash_at}")
    code = spawn("--worker", "crash", "--crash-after", str(crash_at))
    if code != -signal.SIGKILL:
        print(f"demo failed: the first process exited with {code} instead of being killed")
        return 1
    print(f"\n== The process died after step {crash_at}; workflow {WORKFLOW_ID} is left PENDING.")
    print("== Starting a new process; its DBOS.launch() finds the workflow and resumes it")
    if spawn("--worker", "recover") != 0:
        print("demo failed: the recovering process did not finish the workflow")
        return 1
    summary()
    return 0


def main() -> int:
    """Parse the command line and run the demo or one of its workers."""
    parser = argparse.ArgumentParser(
        prog="python -m examples.checkout",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--crash-after",
        type=int,
        choices=range(1, STEPS + 1),
        default=2,
        metavar="STEP",
        help="the step (1-4) after which the first process is killed (default: 2, the charge)",
    )
    parser.add_argument(
        "--worker",
        choices=("crash", "recover"),
        help="internal: run one of the demo's child processes instead of the whole demo",
    )
    args = parser.parse_args()
    if args.worker == "crash":
        global crash_after  # noqa: PLW0603 - the one setting that makes this process die
        crash_after = args.crash_after
        crashing_worker()
        return 0
    if args.worker == "recover":
        recovering_worker()
        return 0
    return narrate(args.crash_after)


if __name__ == "__main__":
    sys.exit(main())
