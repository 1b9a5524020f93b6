#!/usr/bin/env bash
# make demo's search (--trials 10) with an older revision and with this tree, interleaved, seeds
# 0-2 (docs/performance.md, "make demo"). Each run is a fresh process with a fresh study; the
# older tree (core and builtin plugins) is imported through PYTHONPATH from a `git archive` of
# the revision.
#   bash benchmarks/demo_side_by_side.sh c4a803d [seeds...]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
old_rev=${1:?usage: demo_side_by_side.sh OLD_REVISION [SEED ...]}
shift
seeds=("${@:-0 1 2}")
work=$(mktemp -d)
mkdir "$work/old" && git -C "$root" archive "$old_rev" | tar -x -C "$work/old"
python=$root/.venv/bin/python
for s in ${seeds[@]}; do
  for v in old new; do
    tree=$root; [ $v = old ] && tree=$work/old
    cd "$work"
    start=$(date +%s.%N)
    PYTHONPATH=$tree:$tree/plugins $python -c "import sys; sys.argv = ['autotransfer', *sys.argv[1:]]
from autotransfer.cli import main; main()" search "$root/data/fashion-mnist" \
      --space "$root/search_spaces/image-quick.yaml" --trials 10 --seed "$s" \
      --storage "sqlite:///$v$s.db" --out "out-$v$s" > "log-$v$s.txt" 2>&1
    wall=$(python3 -c "print(round($(date +%s.%N) - $start, 1))")
    echo "$v seed $s wall ${wall}s $(grep -o 'first batch after [0-9.]*s' "log-$v$s.txt")" \
         "$(grep -o 'best: .* val accuracy [0-9.]*, test [0-9.]*' "log-$v$s.txt")" \
         "$(grep -o 'best reference: [-+0-9.]*' "log-$v$s.txt")"
  done
done
echo "logs: $work"
