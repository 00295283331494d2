# Everyday commands. `just` comes from the rust-just package (in the dev extra).

venv := ".venv"
py := venv + "/bin/python"

# create the venv from uv.lock (uv itself comes from pip)
setup:
    python3 -m pip install --quiet --upgrade uv
    python3 -m uv sync --frozen --extra dev

# the hero run: relay, mint, buyer and N nodes, all local; maps this repo
demo nodes="20": setup
    {{py}} -m pylon.cli.main demo --nodes {{nodes}}

# the whole test suite
test: setup
    {{py}} -m pytest -q

# benchmarks: print figures and ratios (not pass/fail)
bench: setup
    {{py}} bench/loop.py
    {{py}} bench/pick.py
    {{py}} bench/repomap.py
    {{py}} bench/pay.py
    {{py}} bench/ask.py

# attach the control plane to the local buyer
tui: setup
    {{venv}}/bin/pylon-tui buyer

lint: setup
    {{venv}}/bin/ruff check .
    {{venv}}/bin/ruff format --check .
