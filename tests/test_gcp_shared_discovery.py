"""Discovery clients built once per target and shared by threads (provision/gcp/shared_discovery.py),
each thread's requests on its own connection: many threads calling at once all get their answers."""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from emulator_helpers import create_project
from provision.gcp.target import Target


def test_one_client_for_every_thread_and_each_thread_its_own_connection(emulator):
    create_project(emulator.url, "p-shared")
    target = Target(emulator=emulator.url)
    seen: dict[int, tuple[object, object, object]] = {}
    lock = threading.Lock()

    def read(i: int) -> str:
        svc = target.healthcare()
        locations = svc.projects().locations()
        answer = locations.list(name="projects/p-shared").execute(num_retries=0)
        with lock:
            seen[threading.get_ident()] = (svc, locations, target._thread_http())
        return ",".join(sorted(loc["locationId"] for loc in answer.get("locations", [])))

    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(read, range(64)))
    assert len(set(answers)) == 1 and "us-central1" in answers[0]     # every call answered, the same
    clients = {id(svc) for svc, _, _ in seen.values()}
    chains = {id(loc) for _, loc, _ in seen.values()}
    connections = {id(http) for _, _, http in seen.values()}
    assert len(clients) == 1 and len(chains) == 1            # built once: the nested resource too
    assert len(connections) == len(seen) > 1                   # httplib2 is not thread-safe: one per thread
    assert Target(emulator=emulator.url).healthcare() is not target.healthcare()   # per target (its credentials)


def test_a_pool_threads_connections_are_closed_when_the_pool_ends_not_left_to_the_garbage_collector(emulator):
    """Each thread's own connection (httplib2 for the discovery clients, a requests session for raw calls)
    is closed when its thread goes: a run's thread pools left up to 179 unclosed sockets per CLI test file
    for the garbage collector, each a ResourceWarning (one surfaced as a PytestUnraisableExceptionWarning)."""
    import gc
    import warnings

    create_project(emulator.url, "p-closed")
    target = Target(emulator=emulator.url)
    gc.collect()   # what came before is not this test's
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always", ResourceWarning)
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda _: (target.healthcare().projects().locations().list(name="projects/p-closed").execute(),
                                     target.session().get(f"{emulator.url}/v1/projects/p-closed/locations").status_code),
                          range(8)))
        gc.collect()
    unclosed = [str(w.message) for w in seen if issubclass(w.category, ResourceWarning)]
    assert unclosed == []
