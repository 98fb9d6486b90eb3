/// The session as the client registry (`ClientRecord.session`) sees it.
extension GatewaySession: ClientSession {
    func goodbyeForLoadBalancing() { goodbye(reason: "load balancing", closeCode: .normal) }
    func replacedByNewerConnection() { fatal("replaced by a newer connection") }

    func deliver(_ message: RoutedMessage) {
        guard !isClosing else { return }
        let gateway = self.gateway
        guard let frame = DispatchFrame.make(message, for: encoding, ts: gateway.loop.nowMilliseconds,
                                             scratch: &gateway.scratch, pool: gateway.loop.framePool) else {
            gateway.logger.warning("could not transcode a queued message; not delivered (redelivered after the timeouts)")
            return
        }
        deliver(frame)
    }
}

/// The session as the sender of routed messages (`no_route` after peers).
extension GatewaySession: RouteOrigin {}
