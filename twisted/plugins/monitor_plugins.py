# The twistd plugins.  Nothing here imports the application: twistd --help
# stays fast and installs no reactor early.
from twisted.application.service import ServiceMaker

monitor = ServiceMaker(
    "monitor",
    "monitor.tap",
    "Real-time social media monitoring hub.",
    "monitor",
)

monitor_node = ServiceMaker(
    "monitor-node",
    "monitor.nodes.node_tap",
    "Analysis node: scores posts for a monitor hub that it dials.",
    "monitor-node",
)
