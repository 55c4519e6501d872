#!/usr/bin/env python3
"""Sums a `perf script` dump (perf record --call-graph dwarf) into where CPU
goes: by the leaf frame's category (self time) and by subsystem on the stack
(inclusive time). Usage: perf script -i perf.data | perf_categories.py"""
import re
import sys
from collections import Counter

LEAF = [
    ("TLS/QUIC crypto (ring AES-GCM, header protection)", r"ring_core|ring::|aead|rustls|gcm|aes_"),
    ("allocation (malloc/free)", r"malloc|_int_free|cfree|free@|realloc|unlink_chunk|calloc|__libc_free|tcache"),
    ("memcpy/memmove/memcmp", r"memmove|memcpy|memcmp|memset"),
    ("fsync/fdatasync (kernel)", r"fsync|fdatasync|jbd2|ext4_sync|blk_|nvme|virtio_queue|iowrite"),
    ("UDP send/receive (kernel)", r"udp|ip_|__dev_queue|loopback|net_rx|napi|__sys_sendmsg|__sys_recvmsg|sendmmsg|recvmmsg|skb|sock_|copy_to_iter|copy_from_iter|__check_object"),
    ("scheduler/futex/epoll (kernel)", r"finish_task_switch|schedule|futex|ep_poll|epoll|raw_spin|try_to_wake|irqentry|syscall_exit|do_syscall|entry_SYSCALL|__x64_sys|pthread_cond|syscall$"),
    ("fjall/lsm storage engine", r"fjall|lsm_tree|crossbeam_skiplist|value_log"),
    ("QUIC protocol (quinn-proto)", r"quinn_proto"),
    ("quinn async shell", r"quinn::"),
    ("anti-entropy trees", r"kvorum_node::aae"),
    ("postcard/serde encoding", r"postcard|serde"),
    ("metrics", r"metrics|prometheus"),
    ("hashing (xxh3/sip)", r"xxh3|sip::|xxhash|blake"),
    ("ring placement", r"kvorum_ring"),
    ("tokio runtime", r"tokio::"),
    ("kvorum (other)", r"kvorum"),
]
INCLUSIVE = [
    ("storage::run_batch (group commit thread)", r"storage::run_batch"),
    ("quinn ConnectionDriver (QUIC + TLS + UDP)", r"ConnectionDriver"),
    ("quinn endpoint driver (UDP receive)", r"EndpointDriver"),
    ("net::serve_stream (server side of a request)", r"net::serve_stream"),
    ("coordinator", r"kvorum_node::coordinator"),
    ("transport (peer calls)", r"kvorum_node::transport"),
    ("replica", r"kvorum_node::replica"),
    ("anti-entropy trees", r"kvorum_node::aae"),
    ("encoding (postcard)", r"postcard"),
    ("metrics recording", r"metrics::"),
    ("allocation (malloc/free, anywhere)", r"malloc|_int_free|cfree|realloc|unlink_chunk"),
    ("TLS/QUIC packet crypto", r"ring_core|ring::aead|ring::aes|quinn_proto::crypto|rustls::quic"),
    ("sendmsg (kernel)", r"sendmsg"),
    ("recvmsg (kernel)", r"recvmsg"),
    ("fsync/fdatasync", r"fsync|fdatasync"),
]

def main():
    leaf, incl, total = Counter(), Counter(), 0
    stack = []
    def flush():
        nonlocal total
        if not stack:
            return
        total += 1
        head = stack[0]
        for name, pat in LEAF:
            if re.search(pat, head):
                leaf[name] += 1
                break
        else:
            leaf["other: " + head[:60]] += 1
        joined = "\n".join(stack)
        for name, pat in INCLUSIVE:
            if re.search(pat, joined):
                incl[name] += 1
    for line in sys.stdin:
        if not line.strip():
            flush()
            stack = []
        elif line.startswith(("\t", " ")):
            parts = line.strip().split(None, 1)
            if len(parts) == 2:
                stack.append(parts[1])
        else:
            stack = []
    flush()
    print(f"{total} samples")
    print("\nself time by leaf frame:")
    for k, v in leaf.most_common(25):
        print(f"  {100.0 * v / total:5.1f}%  {k}")
    print("\ninclusive (on the stack):")
    for k, v in sorted(incl.items(), key=lambda kv: -kv[1]):
        print(f"  {100.0 * v / total:5.1f}%  {k}")

main()
