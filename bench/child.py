"""What the benchmarks run a timed CLI child through: a small wrapper process that
starts it, times it and reads its own ``RUSAGE_CHILDREN`` (the child's peak RSS, not
the benchmark's), then prints one JSON line: rc, seconds, maxrss_kib, cpu, stdout,
the tail of stderr. Run as ``python -c WRAPPER COMMAND...``."""

WRAPPER = """
import json, resource, subprocess, sys, time
t0 = time.perf_counter()
proc = subprocess.run(sys.argv[1:], capture_output=True, text=True)
took = time.perf_counter() - t0
use = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"rc": proc.returncode, "seconds": took, "maxrss_kib": use.ru_maxrss,
                  "cpu": use.ru_utime + use.ru_stime,
                  "stdout": proc.stdout, "stderr": proc.stderr[-2000:]}))
"""
