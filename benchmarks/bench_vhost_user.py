"""A real Linux guest reading virtcore's vhost-user devices, against QEMU's built-in ones.

    python benchmarks/bench_vhost_user.py [--mib 64] [--rounds 5] [--rng-kib 256] [--profile]

One QEMU 7.2 guest (q35, TCG, Debian's kernel, a busybox initramfs built as in the tests) gets
four devices at once: ``vhost-user-blk-pci`` served by ``virtcore vhost-user --model
virtio-blk`` and QEMU's own ``virtio-blk-pci``, both on the same raw image (read-only), and
``vhost-user-rng-pci`` served by ``virtcore vhost-user --model virtio-rng`` beside QEMU's own
``virtio-rng-pci`` (``/dev/urandom``).  In each round the guest drops its page cache and runs
``dd if=/dev/vdX of=/dev/null bs=1M`` on each disk, and reads ``--rng-kib`` KiB from
``/dev/hwrng`` with each rng selected in turn (``rng_current``); the order within a round
alternates.  Times are busybox ``time``'s (guest clock, 10 ms resolution: elapsed, and the
guest CPU time of dd, which under TCG includes the guest driver's work).  The host measures
the CPU time of QEMU and of each back-end process over the run.  ``--profile blk|rng`` runs
that back-end under cProfile and prints where its time goes (distorts the throughput; use it
for the per-request picture).
"""

from __future__ import annotations

import argparse
import os
import pstats
import random
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins" / "virt_virtio" / "tests"))
import qemu_guest as g  # noqa: E402

TIMED = re.compile(r"^(?P<tag>blk|rng) (?P<dev>\w+) (?P<wall>[\d.]+) (?P<user>[\d.]+) "
                   r"(?P<sys>[\d.]+)$")


def _script(rounds: int, rng_kib: int) -> str:
    return f"""
vhost=""; builtin=""
for b in /sys/block/vd*; do
  case "$(readlink -f $b/device)" in
    *0000:00:05.0*) vhost=${{b##*/}};; *0000:00:06.0*) builtin=${{b##*/}};;
  esac
done
echo "rngs $(cat /sys/class/misc/hw_random/rng_available)"
for r in $(seq {rounds}); do
  if [ $((r % 2)) = 1 ]; then order="vhost builtin"; else order="builtin vhost"; fi
  for which in $order; do
    if [ $which = vhost ]; then dev=$vhost; else dev=$builtin; fi
    sync; echo 3 > /proc/sys/vm/drop_caches
    time -o /tmp/t -f "%e %U %S" dd if=/dev/$dev of=/dev/null bs=1M 2>/dev/null
    echo "blk $which $(cat /tmp/t)"
  done
  for which in $order; do
    # PCI probe order: 00:07.0 (vhost-user) registers virtio_rng.0, 00:08.0 virtio_rng.1
    if [ $which = vhost ]; then echo virtio_rng.0 > /sys/class/misc/hw_random/rng_current
    else echo virtio_rng.1 > /sys/class/misc/hw_random/rng_current; fi
    time -o /tmp/t -f "%e %U %S" dd if=/dev/hwrng of=/dev/null bs=1024 count={rng_kib} 2>/dev/null
    echo "rng $which $(cat /tmp/t)"
  done
done"""


def _cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _backend(kit: g.GuestKit, sock: Path, model: str, arg: str, log: Path,
             profile: Path | None) -> subprocess.Popen[bytes]:
    if profile is None:
        return g.start_backend(sock, model, arg, log=log)
    cmd = [sys.executable, "-m", "cProfile", "-o", str(profile), "-m", "virtcore",
           "vhost-user", "--socket", str(sock), "--model", model, "--arg", arg]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=out, stdin=subprocess.DEVNULL)
    while not sock.exists():
        if proc.poll() is not None:
            raise SystemExit(log.read_text())
        time.sleep(0.05)
    return proc


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=64, help="disk image size")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--rng-kib", type=int, default=256)
    parser.add_argument("--profile", choices=("blk", "rng"))
    args = parser.parse_args()
    kit = g.find_kit()
    if isinstance(kit, str):
        print(f"skipped: {kit}")
        return 0
    with tempfile.TemporaryDirectory(prefix="bench-vhu-") as tmp:
        d = Path(tmp)
        image = d / "disk.img"
        image.write_bytes(random.Random(1).randbytes(args.mib << 20))
        source = d / "rng.bin"
        source.write_bytes(random.Random(2).randbytes(
            (args.rng_kib * args.rounds + 1024) * 1024 * 2))
        initrd = g.build_initramfs(kit, _script(args.rounds, args.rng_kib), d / "initrd.img")
        profile = d / "backend.prof" if args.profile else None
        blk = _backend(kit, d / "blk.sock", "virtio-blk", f"image={image}", d / "blk.log",
                       profile if args.profile == "blk" else None)
        rng = _backend(kit, d / "rng.sock", "virtio-rng", f"source={source}", d / "rng.log",
                       profile if args.profile == "rng" else None)
        cmd = g.qemu_command(kit, initrd, [
            "-chardev", f"socket,id=b,path={d / 'blk.sock'}",
            "-device", "vhost-user-blk-pci,chardev=b,num-queues=1,disable-legacy=on,addr=0x5",
            "-drive", f"file={image},format=raw,if=none,id=d0,readonly=on",
            "-device", "virtio-blk-pci,drive=d0,num-queues=1,disable-legacy=on,addr=0x6",
            "-chardev", f"socket,id=r,path={d / 'rng.sock'}",
            "-device", "vhost-user-rng-pci,chardev=r,addr=0x7",
            "-object", "rng-random,id=ur,filename=/dev/urandom",
            "-device", "virtio-rng-pci,rng=ur,addr=0x8",
        ])
        cpu0 = {p.pid: _cpu(p.pid) for p in (blk, rng)}
        children0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.monotonic()
        out = g.run_guest(cmd, timeout=1800)
        wall = time.monotonic() - started
        children1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        qemu_cpu = (children1.ru_utime + children1.ru_stime
                    - children0.ru_utime - children0.ru_stime)
        cpu = {}
        for p in (blk, rng):  # reap with rusage: each back-end's CPU during the guest run
            _, status, usage = os.wait4(p.pid, 0)
            p.returncode = os.waitstatus_to_exitcode(status)
            cpu[p.pid] = usage.ru_utime + usage.ru_stime - cpu0[p.pid]
        lines = g.section(out)
        results: dict[tuple[str, str], list[float]] = {}
        guest_cpu: dict[tuple[str, str], list[float]] = {}
        sizes = {"blk": args.mib / 1.0, "rng": args.rng_kib / 1024}
        for line in lines:
            m = TIMED.match(line)
            if m:
                key = (m["tag"], m["dev"])
                secs = max(float(m["wall"]), 0.01)
                results.setdefault(key, []).append(sizes[m["tag"]] / secs)
                guest_cpu.setdefault(key, []).append(float(m["user"]) + float(m["sys"]))
            elif line.startswith(("blk ", "rng ")):
                print("unparsed:", line)
        print(f"guest run {wall:.1f} s wall, QEMU CPU {qemu_cpu:.1f} s; back-end CPU during it: "
              f"blk {cpu[blk.pid]:.2f} s, rng {cpu[rng.pid]:.2f} s")
        for tag, unit in (("blk", f"MiB/s ({args.mib} MiB, bs=1M)"),
                          ("rng", f"KiB/s ({args.rng_kib} KiB, bs=1024)")):
            scale = 1.0 if tag == "blk" else 1024.0
            med = {}
            for dev in ("vhost", "builtin"):
                rates = [r * scale for r in results.get((tag, dev), [])]
                if not rates:
                    print(f"{tag} {dev}: no result")
                    continue
                med[dev] = statistics.median(rates)
                cpu_s = statistics.median(guest_cpu[(tag, dev)])
                print(f"{tag} {dev:8s} median {med[dev]:9.1f} {unit}  min {min(rates):.1f}  "
                      f"max {max(rates):.1f}  n={len(rates)}  guest dd CPU median {cpu_s:.2f} s")
            if len(med) == 2:
                print(f"{tag} ratio virtcore vhost-user / QEMU built-in: "
                      f"{med['vhost'] / med['builtin']:.2f}")
        total_mib = args.mib * len(results.get(("blk", "vhost"), []))
        if total_mib:
            print(f"blk back-end CPU per MiB read: {cpu[blk.pid] / total_mib * 1000:.2f} ms")
        requests = args.rng_kib * 1024 // 64 * len(results.get(("rng", "vhost"), []))
        if requests:  # Linux's virtio-rng posts one 64-byte buffer at a time
            print(f"rng back-end CPU per 64-byte request: "
                  f"{cpu[rng.pid] / requests * 1e6:.0f} us ({requests} requests, plus the "
                  "kernel's own reads)")
        if profile is not None and profile.exists():
            stats = pstats.Stats(str(profile))
            stats.sort_stats("tottime").print_stats(18)
        print("blk back-end log tail:", (d / "blk.log").read_text().splitlines()[-1:])
    return 0


if __name__ == "__main__":
    sys.exit(main())
