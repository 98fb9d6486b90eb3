import Testing
@testable import Singyeong

/// `HTTPConnectionHandler` over a `RecordingConnection`: pipelined requests
/// are answered in request order, including when one answer comes later.
@Suite struct HTTPPipeliningTests {
    let h = GatewayHarness()

    @Test func twoRequestsInOneReadAreAnsweredInOrder() {
        let c = h.httpConnection()
        c.receive(Array("GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n".utf8))
        let responses = httpResponses(c.takeSent())
        #expect(responses.map(\.status) == [200, 200])
        #expect(responses.map(\.body) == ["/a", "/b"])
        #expect(c.isOpen)
        #expect(c.calls.last == .startIdleDeadline, "between requests the idle deadline runs")
        #expect(c.input.isEmpty)
    }

    @Test func aRequestSplitAcrossReadsWaitsForItsEnd() {
        let c = h.httpConnection()
        c.receive(Array("GET /a HTTP/1.1\r\nHo".utf8))
        #expect(c.takeSent().isEmpty)
        #expect(c.calls == [.startHandshakeDeadline])
        c.receive(Array("st: x\r\n\r\n".utf8))
        #expect(httpResponses(c.takeSent()).map(\.body) == ["/a"])
    }

    @Test func aLaterAnswerHoldsBackThePipelinedRequest() {
        h.application.deferredPaths = ["/slow"]
        let c = h.httpConnection()
        c.receive(Array("GET /slow HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n".utf8))
        #expect(c.takeSent().isEmpty, "nothing may overtake the awaited answer")
        #expect(h.application.seen == ["/slow"])
        #expect(!c.input.isEmpty, "the pipelined request is kept")
        let before = c.calls.count
        h.application.answerPending("/slow")
        // Answered, then the kept input is offered again: /b is read and answered.
        #expect(Array(c.calls[before...]) == [.startIdleDeadline, .resumeInput, .startHandshakeDeadline, .startIdleDeadline])
        #expect(httpResponses(c.takeSent()).map(\.body) == ["/slow", "/b"])
        #expect(h.application.seen == ["/slow", "/b"])
        #expect(c.input.isEmpty)
    }

    @Test func connectionCloseClosesAfterTheResponse() {
        let c = h.httpConnection()
        c.receive(Array("GET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n".utf8))
        #expect(httpResponses(c.takeSent()).map(\.body) == ["/a"], "nothing after the closing request")
        #expect(c.calls.last == .closeAfterFlush("HTTP request without keep-alive"))
        #expect(!c.isOpen)
    }

    @Test func aBadRequestIsAnsweredAndClosed() {
        let c = h.httpConnection()
        c.receive(Array("GET /a HTTP/1.1\r\nHost: x\r\n\r\nNONSENSE\r\n\r\n".utf8))
        let responses = httpResponses(c.takeSent())
        #expect(responses.map(\.status) == [200, 400])
        #expect(!c.isOpen)
    }
}
