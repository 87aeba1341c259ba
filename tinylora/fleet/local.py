"""An in-process Flower Grid: the same ServerApp code and ClientApp (with its mods) without
processes or sockets, for the unit tests and the benchmark sweeps. Node 1000 + n is client
(partition) n; messages are answered in order, in this process."""
from __future__ import annotations

import copy

from flwr.app import Context, Error, Message, RecordDict
from flwr.serverapp import Grid
from flwr.supercore.run import Run
from flwr.supercore.task_identity import TaskIdentity

from tinylora.errors import FleetError
from tinylora.fleet import apps


class InProcessGrid(Grid):
    """Delivers each message to `apps.client_app` at once; a raising client becomes an error
    reply, as Flower's runtimes report it."""

    def __init__(self, clients: int, client_app=None):
        self.clients = clients
        self.client_app = client_app or apps.client_app
        self.nodes = {1000 + i: i for i in range(clients)}
        self._run = Run.create_empty(0)
        # one Context per node, kept across messages (SecAgg+'s client mod keeps state in it)
        self.contexts = {node: Context(run_id=0, node_id=node, node_config={
            "partition-id": i, "num-partitions": clients}, state=RecordDict(), run_config={})
            for node, i in self.nodes.items()}
        TaskIdentity.run_id = TaskIdentity.node_id = TaskIdentity.task_id = 0   # as a ServerApp process sets them

    def set_run(self, run) -> None:
        self._run = run

    @property
    def run(self):
        return self._run

    def create_message(self, content, message_type, dst_node_id, group_id="", ttl=None) -> Message:
        return Message(content=content, message_type=message_type, dst_node_id=dst_node_id, group_id=group_id)

    def get_node_ids(self):
        return list(self.nodes)

    def push_messages(self, messages):
        raise FleetError("InProcessGrid answers in send_and_receive only")

    def pull_messages(self, message_ids):
        raise FleetError("InProcessGrid answers in send_and_receive only")

    def send_and_receive(self, messages, *, timeout=None):
        replies = []
        for m in messages:
            m = copy.deepcopy(m)   # each node gets its own copy, as after serialisation
            node = m.metadata.dst_node_id
            try:
                replies.append(self.client_app(m, self.contexts[node]))
            except Exception as e:   # a failing client: an error reply, as the runtimes send
                replies.append(Message(Error(code=0, reason=f"{type(e).__name__}: {e}"), reply_to=m))
        return replies
