public import Foundation
public import Hummingbird
import HummingbirdCore
import HummingbirdHTTP2
public import Logging
import Metrics
public import NIOCore
import NIOPosix
import PollwireCore
public import PollwireEngine
public import Prometheus

/// Builds the Pollwire HTTP application over a poll store and a vote store.
///
/// ```swift
/// let app = try await PollwireApplication.make(
///     settings: settings, pollStore: SQLitePollStore(database: db), voteStore: SQLiteVoteStore(database: db))
/// try await app.runService()
/// ```
///
/// Services, in start order: the vote ingestor, the tally loader, then Hummingbird's server.
/// Shutdown runs in reverse: the server stops accepting and finishes its requests (their
/// votes still commit, since the ingestor runs until then), then the ingestor drains.
/// A setting that cannot work, found when the server is built.
public struct PollwireSettingsError: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}

public enum PollwireApplication {
    /// The parts of a running server that tests and the executable may look at.
    public struct Parts: Sendable {
        public let book: TallyBook
        public let ingestor: VoteIngestor
        public let hub: Hub
        public let registry: PrometheusCollectorRegistry
        public let windows: WindowFeed
    }

    public static func make(
        settings: PollwireSettings,
        pollStore: any PollStore,
        voteStore: any VoteStore,
        logger: Logger = Logger(label: "pollwire"),
        now: @escaping @Sendable () -> Date = { Date() },
        changeFeed makeChangeFeed: (@Sendable (ChangeSink) -> any ChangeFeed)? = nil,
        onServerRunning: @escaping @Sendable (any Channel) async -> Void = { _ in }
    ) async throws -> (some ApplicationProtocol, Parts) {
        let registry = PrometheusCollectorRegistry()
        let factory = PollwireMetricsFactory(
            registry: registry,
            durationBuckets: [
                .microseconds(100), .microseconds(250), .microseconds(500), .milliseconds(1), .milliseconds(2),
                .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100),
                .milliseconds(250), .milliseconds(500), .seconds(1), .seconds(2.5), .seconds(5),
            ],
            valueBuckets: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384])

        let book = TallyBook(latestTextLimit: settings.latestTextLimit, now: now)
        let purger = CachePurger(settings: settings.purge, logger: Logger(label: "pollwire.purge"), factory: factory)
        let hub = Hub(
            book: book, configuration: settings.live, now: now, metricsFactory: factory,
            phaseChanged: { polls in purger?.changed(polls) })
        if settings.purge.url != nil, purger == nil {
            throw PollwireSettingsError(
                "purge.url must be an http:// URL, e.g. http://127.0.0.1:8081/v1/polls/{poll}/results")
        }
        let ingestor = VoteIngestor(
            store: voteStore, book: book, configuration: settings.ingest, now: now,
            logger: Logger(label: "pollwire.ingest"), metricsFactory: factory,
            onCommit: { changes in
                hub.changed(changes)
                purger?.changed(changes.lazy.map(\.pollID))
            })
        let feed = makeChangeFeed?(
            ChangeSink(
                book: book,
                changed: { polls in
                    for poll in polls { hub.touch(poll) }
                    purger?.changed(polls)
                }))
        let signer = Signer(secret: try await pollStore.secret(named: "signing", orMake: Signer.makeSecret))
        let intake = VoteIntake(book: book, signer: signer, now: now)

        // HEAD answers every GET route as GET does, with its headers and without its body.
        let router = Router(context: PollwireRequestContext.self, options: .autoGenerateHeadEndpoints)
        let routeMetrics = RouteMetricsMiddleware.Instruments(factory: factory)
        let policy = ResponsePolicy(tls: settings.tls != nil)
        router.add(middleware: RouteMetricsMiddleware(instruments: routeMetrics))
        router.add(middleware: EdgeHeadersMiddleware(policy: policy))
        router.add(middleware: CompressionMiddleware(minimumBytes: settings.compression.minimumBytes))
        router.add(middleware: ErrorMiddleware())
        OperationsController(book: book, ingestor: ingestor, feed: feed, registry: registry).addRoutes(to: router)

        let finder = PollFinder(book: book, feed: feed)
        let limits = EdgeLimits(settings: settings.rateLimits, factory: factory)
        let authenticator = KeyAuthenticator(store: pollStore, limits: limits, now: now)
        let polls = PollsController(
            store: pollStore, book: book, finder: finder, hub: hub, purger: purger, settings: settings, now: now,
            authenticator: authenticator)
        let windows = WindowFeed(
            store: pollStore, book: book, widths: settings.timelineWindows,
            latenessSeconds: Int64(settings.allowedLatenessSeconds), now: now, metricsFactory: factory)
        let live = LiveDependencies(
            hub: hub, windows: windows, book: book, finder: finder, signer: signer, deliveries: LoopDeliveries(),
            webSocketMetrics: LiveMetrics(transport: "websocket", factory: factory),
            eventsMetrics: LiveMetrics(transport: "sse", factory: factory),
            securityHeaders: SecurityHeaders.fields(tls: settings.tls != nil))
        let votes = VotesController(
            intake: intake, ingestor: ingestor, book: book, finder: finder, settings: settings, limits: limits,
            voterTokens: VoterTokens(store: pollStore))
        let results = ResultsController(book: book, finder: finder, signer: signer, settings: settings, now: now)
        let export = ExportController(store: pollStore, finder: finder, now: now)

        if let directory = settings.webDirectory,
            let web = WebController(directory: directory, finder: finder, logger: logger)
        {
            web.addRoutes(to: router)
        }

        let api = router.group("v1")
        votes.addPublicRoutes(to: api)
        results.addRoutes(to: api)
        polls.addPublicRoutes(to: api)
        LiveController(book: book, finder: finder, widths: settings.timelineWindows).addRoutes(to: api)
        ProofController(store: pollStore, book: book, finder: finder, limits: limits).addRoutes(to: api)
        TimelineController(
            store: pollStore, finder: finder, signer: signer, limits: limits, widths: settings.timelineWindows,
            latenessSeconds: settings.allowedLatenessSeconds, now: now
        ).addRoutes(to: api)
        let management = router.group("v1").add(middleware: APIKeyMiddleware(authenticator: authenticator))
        polls.addManagementRoutes(to: management)
        votes.addManagementRoutes(to: management)
        export.addRoutes(to: management)
        KeysController(store: pollStore, settings: settings, now: now).addRoutes(to: management)
        AuditController(store: pollStore).addRoutes(to: management)
        VoterKeysController(store: pollStore, settings: settings, now: now).addRoutes(to: management)

        let admission = Admission(
            settings: settings.admission, securityHeaders: SecurityHeaders.fields(tls: settings.tls != nil),
            factory: factory)
        let readTimeout = TimeAmount.nanoseconds(Int64(settings.requestReadTimeout / .nanoseconds(1)))
        let idleTimeout = TimeAmount.nanoseconds(Int64(settings.idleTimeout / .nanoseconds(1)))
        let fastPath = FastPathHandler.Dependencies(
            book: book, results: results, policy: policy, compressionMinimum: settings.compression.minimumBytes,
            metrics: routeMetrics)
        let protocolErrors = ProtocolErrorResponses(
            securityHeaders: SecurityHeaders.fields(tls: settings.tls != nil).map { ($0.name.rawName, $0.value) })
        let sslContext = try settings.tls.map { try PollwireServerChannel.sslContext($0, http2: settings.http2) }
        let app = Application(
            router: router,
            server: HTTPServerBuilder { responder in
                let http1 = LiveHTTPChannel(
                    responder: responder,
                    http1: .init(
                        additionalChannelHandlers: [FastPathHandler(dependencies: fastPath)], idleTimeout: idleTimeout),
                    dependencies: live, maxFrameSize: 1 << 16, tls: sslContext != nil,
                    webSocketDeflate: settings.compression.webSocketDeflate, readTimeout: readTimeout,
                    protocolErrors: protocolErrors, admission: admission, reads: fastPath)
                let http2 =
                    settings.http2
                    ? HTTP2Channel(
                        responder: responder,
                        configuration: .init(
                            idleTimeout: settings.idleTimeout,
                            streamConfiguration: .init(
                                additionalChannelHandlers: PollwireServerChannel.streamHandlers(
                                    live, admission: admission, fastPath: fastPath, readTimeout: readTimeout)))) : nil
                return PollwireServerChannel(
                    http1: http1, http2: http2, sslContext: sslContext, firstBytesTimeout: idleTimeout,
                    negotiationTimeout: readTimeout)
            },
            configuration: .init(address: .hostname(settings.host, port: settings.port), serverName: nil),
            services: [ingestor, TallyLoader(store: pollStore, book: book, logger: logger), hub, windows]
                + (feed.map { [$0] } ?? []) + (purger.map { [$0] } ?? [])
                + (settings.admission.maxLoopDelayMs > 0
                    ? [
                        LoopDelayMonitor(
                            group: MultiThreadedEventLoopGroup.singleton, pool: admission.voters,
                            allowed: .nanoseconds(Int64(settings.admission.maxLoopDelayMs * 1e6)))
                    ] : []),
            onServerRunning: onServerRunning,
            logger: logger)
        return (app, Parts(book: book, ingestor: ingestor, hub: hub, registry: registry, windows: windows))
    }
}
