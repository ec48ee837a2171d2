# Developer commands. `just` is optional (pip install rust-just); each recipe is a plain command.

# list the recipes
default:
    @just --list

# run the backend on a development machine (stand-ins for the models, the ML app, a PACS)
run *ARGS:
    cargo run -p nachet-dev -- {{ARGS}}

# run the production server (every required setting given: NACHET_CONFIG or NACHET__*)
serve *ARGS:
    cargo run -p nachet-backend -- {{ARGS}}

# every test against the real services (installs and starts them, then stops them)
test *ARGS:
    ./deploy/run-tests.sh {{ARGS}}

# start PostgreSQL, Azurite and Orthanc for repeated `cargo nextest run`; then: eval "$(deploy/services.sh env)"
services-up:
    ./deploy/services.sh start

# stop the services started by services-up
services-down:
    ./deploy/services.sh stop

# format the code
fmt:
    cargo fmt --all

# lints, warnings are errors
lint:
    cargo clippy --workspace --all-targets -- -D warnings

# fuzz every parser of outside bytes for SECONDS each (cargo-fuzz; a crash fails)
fuzz SECONDS="10" *TARGETS:
    FUZZ_SECONDS={{SECONDS}} ./deploy/fuzz.sh {{TARGETS}}

# schema-driven fuzzing of every route from /openapi.json (schemathesis), EXAMPLES per operation
schemathesis EXAMPLES="30":
    SCHEMATHESIS_EXAMPLES={{EXAMPLES}} ./deploy/schemathesis.sh

# check deploy/k8s against the Kubernetes schemas and the backend's settings (no cluster)
k8s-validate:
    ./deploy/k8s-validate.sh

# what CI runs: format check, lints, the k8s manifests, tests, a short fuzz run
ci:
    ./.ci/run
