#!/bin/sh
# tests/lint/layering.sh: the layering rules of STYLE B1 that the meson graph
# cannot enforce, because system headers are always on the include path.
#   - engine/base/ is a leaf: it includes only system headers and include/tandem.h;
#   - engine/ knows nothing of the network: no libuv, no OpenSSL, no net/;
#   - net/replica*, net/proto* and net/frame_proto* include nothing that does I/O
#     or reads a clock.
# Prints each violation as file:line: reason, and fails if there is any.
root=${1:?usage: layering.sh ROOT}
cd "$root" || exit 2
status=0
report() {
    echo "$1: $2"
    status=1
}
for f in engine/base/*.c engine/base/*.h; do
    grep -n '#include "' "$f" | grep -v -e '#include "[a-z_]*\.h"' -e 'include/tandem.h"' |
        while IFS= read -r line; do echo "$f:${line%%:*}: engine/base includes outside itself"; done
done | grep . && status=1
for f in engine/*.c engine/*.h; do
    if grep -n -E '#include [<"](uv\.h|openssl/|net/|\.\./net/)' "$f"; then
        report "$f" "engine/ must not include libuv, OpenSSL or net/"
    fi
done
for f in net/replica*.c net/replica*.h net/proto*.c net/proto*.h net/frame_proto*.c \
    net/frame_proto*.h; do
    [ -e "$f" ] || continue
    if grep -n -E '#include <(uv\.h|lmdb\.h|pthread\.h|time\.h|unistd\.h|fcntl\.h|sys/)' "$f"; then
        report "$f" "net/replica, net/proto and net/frame_proto must not include I/O, threads or clocks"
    fi
done
if [ "$status" -eq 0 ]; then
    echo "layering: ok"
fi
exit "$status"
