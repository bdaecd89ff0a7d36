"""`fastact bench` / `fastact info` end to end on tiny sizes (structure, not figures)."""
import csv
import json
import os
import subprocess
import sys

import pytest

from fastact.cli import main

TINY = ["--ops", "relu,sigmoid", "--sizes", "1000", "--repeats", "3", "--bandwidth-mib", "4",
        "--no-progress"]
COLUMNS = ["op", "pass", "dtype", "size", "backend", "median", "GB/s", "% copy", "vs numpy",
           "1st call"]


def run_cli(capsys, *args):
    code = main(["bench", *args])
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(err, *needles):
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """One tiny run writing JSON and CSV, shared by the structure tests."""
    d = tmp_path_factory.mktemp("bench")
    js, cs = d / "run.json", d / "run.csv"
    import io
    from contextlib import redirect_stderr, redirect_stdout
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(["bench", *TINY, "--json", str(js), "--csv", str(cs)])
    return {"code": code, "out": out.getvalue(), "err": err.getvalue(), "json": js, "csv": cs}


def test_table_and_summary(tiny_run):
    assert tiny_run["code"] == 0, tiny_run["err"]
    out = tiny_run["out"]
    lines = out.splitlines()
    assert lines[0] == "Machine"                       # the hardware comes first
    header = next(ln for ln in lines if ln.startswith("op "))
    assert header.split("  ") and [c for c in header.split("  ") if c.strip()] == \
        [c.ljust(0) for c in COLUMNS] or all(c in header for c in COLUMNS)
    assert lines.index(header) > lines.index("Machine")
    for op in ("relu", "sigmoid"):
        for p in ("forward_backward",):                 # --quick: the most fused pass
            for backend in ("fastact-cpu", "numpy"):
                assert any(ln.split()[:2] == [op, p] and backend in ln.split() for ln in lines)
    summary = [ln for ln in lines if ln.startswith("Summary")]
    assert len(summary) == 1
    assert "geometric-mean speedup over NumPy" in summary[0] and "of copy bandwidth" in summary[0]
    assert tiny_run["err"] == ""                        # no progress bar off a terminal


def test_json_contents(tiny_run):
    d = json.loads(tiny_run["json"].read_text())
    assert d["schema"] == "fastact-bench/1"
    assert {"machine", "bandwidth", "results", "summary", "config", "command"} <= set(d)
    m = d["machine"]
    assert {"cpu_model", "threads", "simd", "threading_layer", "versions", "gpu"} <= set(m)
    assert d["bandwidth"]["cpu"]["copy_gbps"] > 0
    rows = d["results"]
    assert len(rows) == 2 * 1 * 2                       # ops x passes x (cpu, numpy)
    for r in rows:
        assert r["status"] == "ok"
        assert r["bytes"] == r["bytes_read"] + r["bytes_written"]
        assert r["bytes_read"] in (4000, 8000) and r["bytes_written"] in (4000, 8000)
        assert r["median_s"] > 0 and r["first_call_s"] > 0 and r["gbps"] > 0
        assert r["pct_copy"] > 0 and r["speedup_vs_numpy"] > 0
    numpy_rows = [r for r in rows if r["target"] == "numpy"]
    assert all(r["speedup_vs_numpy"] == 1.0 for r in numpy_rows)
    assert d["summary"]["cpu"]["measurements"] == 2


def test_csv_contents(tiny_run):
    with open(tiny_run["csv"], newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4
    for key in ("op", "pass", "dtype", "size", "target", "median_s", "gbps", "pct_copy",
                "speedup_vs_numpy", "first_call_s", "bytes", "copy_gbps", "cpu_model", "numba"):
        assert key in rows[0]
    assert {r["target"] for r in rows} == {"fastact-cpu", "numpy"}


def test_compare(tiny_run, capsys, tmp_path):
    old = json.loads(tiny_run["json"].read_text())
    for r in old["results"]:                    # pretend the earlier run was 1000x better
        r["pct_copy"] *= 1000
        r["median_s"] /= 1000
    path = tmp_path / "old.json"
    path.write_text(json.dumps(old))
    code, out, err = run_cli(capsys, *TINY, "--ops", "relu", "--passes", "forward_backward",
                             "--compare", str(path))
    assert code == 0, err
    text = out[out.index("Compared with"):]
    assert "copy bandwidth" in text
    rows = [ln for ln in text.splitlines() if ln.startswith("relu")]
    assert len(rows) == 2 and all("REGRESSION" in ln for ln in rows)
    assert "2 regression(s) in 2 compared measurements" in text


def test_compare_unreadable(capsys, tmp_path):
    code, _, err = run_cli(capsys, *TINY, "--compare", str(tmp_path / "missing.json"))
    assert code == 2
    one_line_error(err, "--compare")


def test_passes_option(capsys):
    code, out, err = run_cli(capsys, *TINY, "--ops", "relu", "--passes",
                             "value_and_derivative,backward")
    assert code == 0, err
    passes = {ln.split()[1] for ln in out.splitlines() if ln.startswith("relu ")}
    assert passes == {"value_and_derivative", "backward"}


def test_hardware_only(capsys):
    code, out, err = run_cli(capsys, "--hardware", "--bandwidth-mib", "4")
    assert code == 0, err
    for key in ("Machine", "CPU", "threads", "SIMD", "caches", "versions", "GPU",
                "bandwidth  CPU copy", "triad"):
        assert key in out
    assert "Summary" not in out and "vs numpy" not in out


def test_device_cuda_without_gpu(capsys):
    from fastact.bench.machine import gpu_info
    if gpu_info() is not None:
        pytest.skip("a GPU is present")
    code, out, err = run_cli(capsys, *TINY, "--device", "cuda")
    assert code == 2
    one_line_error(err, "--device cuda", "no CUDA GPU")
    assert out == ""


def test_device_all_without_gpu_runs_cpu(capsys):
    from fastact.bench.machine import gpu_info
    if gpu_info() is not None:
        pytest.skip("a GPU is present")
    code, out, err = run_cli(capsys, *TINY, "--ops", "relu", "--passes", "backward",
                             "--device", "all")
    assert code == 0, err
    assert "note: --device all: no CUDA GPU here" in out


@pytest.mark.parametrize("args, needles", [
    (["--ops", "rleu"], ["unknown op 'rleu'", "relu"]),
    (["--peers", "tensorflow"], ["unknown peer 'tensorflow'"]),
    (["--sizes", "lots"], ["bad size 'lots'"]),
    (["--dtype", "int8"], ["unknown dtype 'int8'"]),
    (["--threads", "9999"], ["--threads 9999"]),
    (["--json", "/nonexistent-dir/x.json"], ["--json", "does not exist"]),
    (["--csv", "/"], ["--csv", "is a directory"]),
    (["--device", "gpu"], ["invalid choice"]),
    (["--bogus"], ["unrecognized arguments"]),
])
def test_user_errors_are_one_line(capsys, args, needles):
    code, out, err = run_cli(capsys, *TINY, *args)
    assert code == 2
    one_line_error(err, *needles)


def test_unwritable_file(capsys, tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root can write anywhere")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        code, _, err = run_cli(capsys, *TINY, "--csv", str(ro / "x.csv"))
    finally:
        ro.chmod(0o700)
    assert code == 2
    one_line_error(err, "--csv", "not writable")


def test_unavailable_peer(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "jax", None)       # import jax -> ImportError
    code, _, err = run_cli(capsys, *TINY, "--peers", "numpy,jax")
    assert code == 2
    one_line_error(err, "peer 'jax'", "not installed")


def test_plot_without_matplotlib(capsys, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    code, _, err = run_cli(capsys, *TINY, "--plot", str(tmp_path / "p.png"))
    assert code == 2
    one_line_error(err, "--plot needs matplotlib")


def test_plot(capsys, tmp_path):
    pytest.importorskip("matplotlib")
    png = tmp_path / "p.png"
    code, out, err = run_cli(capsys, *TINY, "--ops", "relu", "--passes", "backward",
                             "--plot", str(png))
    assert code == 0, err
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_torch_peer_rows(capsys):
    pytest.importorskip("torch")
    code, out, err = run_cli(capsys, *TINY, "--ops", "sigmoid", "--passes", "forward_backward",
                             "--peers", "numpy,torch")
    assert code == 0, err
    rows = [ln.split() for ln in out.splitlines() if ln.startswith("sigmoid")]
    assert {r[4] for r in rows} == {"fastact-cpu", "numpy", "torch"}
    assert "over torch" in out


def test_op_without_peer_is_skipped_with_a_note(capsys):
    pytest.importorskip("torch")
    code, out, err = run_cli(capsys, *TINY, "--ops", "binary_step", "--passes", "backward",
                             "--peers", "torch")
    assert code == 0, err
    assert "skipped" in out and "no PyTorch equivalent of binary_step" in out


def test_list(capsys):
    code, out, _ = run_cli(capsys, "--list")
    assert code == 0
    assert out.splitlines()[0].split() == ["op", "kind", "peers", "passes"]
    assert any(ln.split()[0] == "relu" for ln in out.splitlines()[1:])


def test_info(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "fastact" in out and "backends" in out
    assert main(["info", "--json"]) == 0
    assert "numba" in json.loads(capsys.readouterr().out)


def test_python_m_fastact_and_no_subcommand():
    r = subprocess.run([sys.executable, "-m", "fastact", "bench", "--hardware",
                        "--bandwidth-mib", "4"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("Machine")
    r = subprocess.run([sys.executable, "-m", "fastact"], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2
    one_line_error(r.stderr, "required")
