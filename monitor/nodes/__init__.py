"""
Remote analysis nodes over AMP.

  - L{monitor.nodes.wire}: the commands, the handshake proofs and the
    argument type that carries JSON past AMP's 64 KiB value limit;
  - L{monitor.nodes.pool}: the hub's side, L{NodePool}, the hub's analyzer;
  - L{monitor.nodes.node}: the node's side, L{AnalysisNode};
  - L{monitor.nodes.node_tap}: C{twistd monitor-node};
  - L{monitor.nodes.secret}: where the shared secret comes from.

Nothing is imported here, so that the configuration check can read
L{monitor.nodes.secret} without loading AMP.
"""
