"""DistTask's "Submitting a User-Defined Task" example, against Drover: only the URL and
the Authorization header differ from the original. Run it from this directory (its
`tasks` module is the SDK's) with the cluster's CA trusted by requests:

    export REQUESTS_CA_BUNDLE=~/.local/share/drover/server/tls/ca.crt
    export DROVER_URL=$(cat ~/.local/share/drover/server/endpoint)
    export TOKEN=$(cat ~/.local/share/drover/server/token)
    python3 submit_task.py
"""

import os

import requests
from tasks import serialize_task

URL = os.environ.get("DROVER_URL", "https://127.0.0.1:7070")
HEADERS = {"Authorization": f"Bearer {os.environ['TOKEN']}"}


def example_task(x, y):
    return x + y


task = serialize_task(example_task, 3, 4)
response = requests.post(URL + '/submit_task', json={"task": task}, headers=HEADERS)
print(response.json())
