/// Queue names (queues.md §1, Recommended): 1–255 bytes of UTF-8.
enum QueueName {
    static let maxLength = 255
}
