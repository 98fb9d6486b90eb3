/// The gateway delivers what peers route to this node's clients.
extension Gateway: LocalDelivery {}
