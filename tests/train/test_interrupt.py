"""SIGTERM/SIGINT handling in one process, and the supervisor of multi-process runs that turns a
lost peer into one line and exit status 7 (with stand-in trainers: no JAX run needed)."""

import os
import signal
import sys
import textwrap

import pytest

from train.interrupt import Interruption
from train.supervisor import (
    EXIT_LOST_PEER,
    PROGRESS_FD,
    is_transport_failure,
    lost_peer_name,
    newest_complete_checkpoint,
    supervise,
)


def test_first_signal_requests_a_stop_second_ctrl_c_stops_at_once(capfd):
    interruption = Interruption()
    interruption.arm()
    try:
        assert not interruption.reached(3)
        os.kill(os.getpid(), signal.SIGINT)
        assert interruption.received == "SIGINT" and interruption.reached(4)
        assert "Ctrl-C again stops at once" in capfd.readouterr().err
        os.kill(os.getpid(), signal.SIGTERM)  # a later SIGTERM changes nothing
        assert interruption.received == "SIGINT"
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    finally:
        interruption.disarm()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


def test_newest_complete_checkpoint_ignores_unfinished_saves(tmp_path):
    assert newest_complete_checkpoint(tmp_path) is None
    for name in ("2", "10", "12.orbax-checkpoint-tmp-1764", "notes"):
        (tmp_path / "checkpoints" / name).mkdir(parents=True)
    assert newest_complete_checkpoint(tmp_path) == 10


def test_lost_peer_is_named_from_the_runtime_message():
    coordinator = ("UNAVAILABLE: Failed to send RPC to coordination service. Either the leader "
                   "task was preempted/died/restarted unexpectedly")
    assert lost_peer_name(coordinator, 1, 2) == "process 0 (the coordinator)"
    heartbeat = "Task /job:jax_worker/replica:0/task:2 heartbeat timeout"
    assert lost_peer_name(heartbeat, 0, 4) == "process 2"
    assert lost_peer_name("unknown", 0, 2) == "process 1"
    assert lost_peer_name("unknown", 0, 3) == "another process"
    assert is_transport_failure(ValueError("Gloo all-reduce failed: Connection closed by peer"))
    assert not is_transport_failure(ValueError("shapes (3,) and (4,) do not match"))


def stand_in(tmp_path, body):
    """A trainer stand-in: reports steps 1-3 on the progress pipe, then runs `body`."""
    script = tmp_path / "trainer.py"
    script.write_text(textwrap.dedent(f"""
        import os, signal, sys
        fd = int(os.environ[{PROGRESS_FD!r}])
        for step in (1, 2, 3):
            os.write(fd, f"{{step}}\\n".encode())
    """) + textwrap.dedent(body))
    return [sys.executable, str(script)]


def test_runtime_termination_becomes_one_line_and_status_7(tmp_path, capfd):
    (tmp_path / "checkpoints" / "2").mkdir(parents=True)
    command = stand_in(tmp_path, """
        print("F1203 client.h:80] Terminating process because the JAX distributed service "
              "detected fatal errors. absl::Status: UNAVAILABLE: Failed to send RPC to "
              "coordination service. Either the leader task was preempted", file=sys.stderr)
        sys.exit(1)
    """)
    assert supervise(command, 1, 2, str(tmp_path)) == EXIT_LOST_PEER
    err = capfd.readouterr().err
    assert "Terminating process" in err  # the runtime's own message is passed through
    line = err.strip().splitlines()[-1]
    assert line == (f"se-train: process 1 of 2 stopped after step 3: the distributed runtime "
                    f"lost process 0 (the coordinator) (see the runtime's message above); the "
                    f"last complete checkpoint is step 2 in {tmp_path / 'checkpoints'}; "
                    "restart every process with --resume"), line


def test_trainer_killed_by_a_signal_is_reported(tmp_path, capfd):
    command = stand_in(tmp_path, "os.kill(os.getpid(), signal.SIGKILL)\n")
    assert supervise(command, 0, 2, str(tmp_path)) == EXIT_LOST_PEER
    line = capfd.readouterr().err.strip().splitlines()[-1]
    assert "process 0 of 2 stopped after step 3: its trainer was ended by SIGKILL" in line
    assert "no checkpoint was written yet" in line


@pytest.mark.parametrize("status", [0, 1, 6])
def test_trainer_statuses_pass_through(tmp_path, status):
    command = stand_in(tmp_path, f"raise SystemExit({status})\n")
    assert supervise(command, 0, 2, str(tmp_path)) == status


def test_signals_reach_the_trainer(tmp_path):
    command = stand_in(tmp_path, """
        got = []
        signal.signal(signal.SIGTERM, lambda s, f: got.append(s))
        os.kill(os.getppid(), signal.SIGTERM)  # the scheduler signals the supervisor
        import time
        deadline = time.time() + 60
        while not got and time.time() < deadline:
            time.sleep(0.01)
        sys.exit(6 if got else 1)
    """)
    assert supervise(command, 0, 2, str(tmp_path)) == 6
