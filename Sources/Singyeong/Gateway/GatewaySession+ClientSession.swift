/// The session as the client registry (`ClientRecord.session`) sees it.
extension GatewaySession: ClientSession {
    func goodbyeForLoadBalancing() { goodbye(reason: "load balancing", closeCode: .normal) }
    func replacedByNewerConnection() { fatal("replaced by a newer connection") }
}

/// The session as the sender of routed messages (`no_route` after peers).
extension GatewaySession: RouteOrigin {}
