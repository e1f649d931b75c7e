"""`blameset demo`: a small AI writing assistant, instrumented the way a user instruments theirs,
serves two days of seeded traffic in simulated time; then the spans are ingested, reported and
attributed, and the HTML report is written. A newcomer's first run, and the notebooks' data.

The application, one concern a module:

- ``_traffic``: the traffic plan (who asks for what, when; the prompt cutover, the model canary);
- ``_loop``: the simulated event loop; ``asyncio.sleep(0.4)`` in the stand-in LLM is 0.4
  simulated seconds and no real time, so two days take seconds and a seed fixes every span;
- ``_llm``: the stand-in LLM provider (streams tokens, reports usage, fails as upstreams do);
- ``_service``: the instrumented service, written as a user writes theirs with blameset;
- ``_clients``: the clients replaying the plan against the service;
- ``_run``: one run: simulate, then ingest, report, attribute and write the HTML report;
- ``_present``: what is printed, and ``main`` behind the command (``_command``).
"""

from ._present import main, print_result
from ._run import DEFAULT_OUT, MARKER, DemoResult, NotADemoFolder, Progress, run, simulate
from ._traffic import GPT_4O, GPT_4O_MINI, T0, Request, plan_traffic

__all__ = [
    "DEFAULT_OUT",
    "GPT_4O",
    "GPT_4O_MINI",
    "MARKER",
    "T0",
    "DemoResult",
    "NotADemoFolder",
    "Progress",
    "Request",
    "main",
    "plan_traffic",
    "print_result",
    "run",
    "simulate",
]
