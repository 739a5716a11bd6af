"""``import cir_milvus`` asks OpenMP for passive waiting, only where that can still take effect and the user chose
nothing (see cir_milvus._runtime; the speed effect is measured by benchmarks/bench_omp_wait.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _policy_after(code: str, **env_extra: str) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    env.update(env_extra)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    out = subprocess.run([sys.executable, "-c", code + "\nimport os; print(os.environ.get('OMP_WAIT_POLICY'))"],
                         capture_output=True, text=True, env=env, timeout=300, check=True)
    return out.stdout.strip().splitlines()[-1]


def test_import_sets_passive_waiting_before_torch_loads() -> None:
    assert _policy_after("import sys, cir_milvus; assert 'torch' not in sys.modules") == "PASSIVE"


@pytest.mark.parametrize("env", [{"OMP_WAIT_POLICY": "ACTIVE"}, {"GOMP_SPINCOUNT": "300000"}])
def test_a_policy_the_user_chose_is_kept(env: dict[str, str]) -> None:
    assert _policy_after("import cir_milvus", **env) == env.get("OMP_WAIT_POLICY", "None")


def test_nothing_is_set_once_torch_has_loaded_openmp() -> None:
    # libgomp read its environment when torch loaded: setting the variable now would claim an effect it cannot have
    assert _policy_after("import torch, cir_milvus") == "None"


def test_openmp_spins_tells_whether_torch_loaded_without_a_policy() -> None:
    # what ingest() reads to log its hint: true only when torch loaded OpenMP before anyone chose a policy
    check = "\nfrom cir_milvus._runtime import openmp_spins; print(openmp_spins())"
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])

    def run(code: str) -> str:
        return subprocess.run([sys.executable, "-c", code + check], capture_output=True, text=True, env=env,
                              timeout=300, check=True).stdout.split()[-1]

    assert run("import torch, cir_milvus") == "True"
    assert run("import cir_milvus, torch") == "False"
