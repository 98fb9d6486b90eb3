/// What the rest of the node asks of the connection behind a local client:
/// Routing owns it so that the client registry (`ClientRecord`,
/// `ClientStore`) can sit below the gateway and the cluster, which both use
/// it. `GatewaySession` is the one conformer.
protocol ClientSession: AnyObject {
    /// Queues an encoded frame for the client (a routed message or an event).
    func deliver(_ frame: OutboundBytes)
    /// Queues a message built for this client from its encoded pieces (the
    /// session writes the frame in its own encoding): a queue delivery.
    func deliver(_ message: RoutedMessage)
    /// Asks the client to reconnect elsewhere (op 7 GOODBYE, load balancing).
    func goodbyeForLoadBalancing()
    /// Ends the session because a newer connection took the client over
    /// (op 8 `replaced by a newer connection`).
    func replacedByNewerConnection()
    /// Answers a queue operation of this client (`QueueOperations`) that
    /// finished: QUEUE_CONFIRM for `.done` when it `confirms` (a QUEUE),
    /// op 3 for `.refused`.
    func answerQueueOperation(_ outcome: QueueOutcome, queue: String, confirms: Bool)
}
