using System.Net;
using System.Net.Sockets;

namespace Queue.ServiceBusEndpoint;

/// <summary>
/// A Service Bus stand-in on loopback for tests: the AMQP surface (<see cref="AmqpSurface"/>) and the
/// administration API's queue reads (<see cref="AdministrationApi"/>), over one in-memory broker. Not
/// shipped; the engine's Service Bus adapter is proven on it here, and on a real namespace where one is given.
/// </summary>
public sealed class ServiceBusTestEndpoint : IDisposable
{
    /// <summary>The namespace's root policy: every right.</summary>
    public const string RootPolicy = "RootManageSharedAccessKey";

    private readonly Broker broker = new();
    private readonly AmqpSurface amqp;
    private readonly AdministrationApi administration;

    private ServiceBusTestEndpoint(int amqpPort, int administrationPort, IReadOnlyList<AccessPolicy> policies, Action<string> log)
    {
        AmqpPort = amqpPort;
        AdministrationPort = administrationPort;
        Policies = policies;
        amqp = new AmqpSurface(amqpPort, broker, policies, log);
        administration = new AdministrationApi(administrationPort, broker, CreateQueue, policies, log);
    }

    public int AmqpPort { get; }

    public int AdministrationPort { get; }

    public IReadOnlyList<AccessPolicy> Policies { get; }

    /// <summary>
    /// Starts on free loopback ports (or the ones given). Without policies, the root policy with a random key
    /// and a <c>send-listen</c> policy without Manage (an identity that may not read entity settings).
    /// </summary>
    public static ServiceBusTestEndpoint Start(int amqpPort = 0, int administrationPort = 0, IReadOnlyList<AccessPolicy>? policies = null, Action<string>? log = null)
    {
        policies ??=
        [
            new AccessPolicy(RootPolicy, NewKey(), AccessRights.All),
            new AccessPolicy("send-listen", NewKey(), AccessRights.Send | AccessRights.Listen),
        ];
        var endpoint = new ServiceBusTestEndpoint(amqpPort > 0 ? amqpPort : FreePort(), administrationPort > 0 ? administrationPort : FreePort(), policies, log ?? (_ => { }));
        endpoint.amqp.Open();
        endpoint.administration.Start();
        return endpoint;
    }

    /// <summary>Creates a queue as the infrastructure would (its dead-letter sub-queue comes with it).</summary>
    public void CreateQueue(string name, TimeSpan lockDuration, int maxDeliveryCount) => CreateQueue(name, new QueueSettings(lockDuration, maxDeliveryCount));

    private void CreateQueue(string name, QueueSettings settings)
    {
        broker.CreateQueue(name, settings);
        amqp.AddManagement(name);
    }

    /// <summary>A connection string for the SDK's client (plain AMQP, as for the official emulator).</summary>
    public string ConnectionString(string policy = RootPolicy) => Connection(AmqpPort, policy);

    /// <summary>The administration client's connection string (its own port, as the official emulator's 5300).</summary>
    public string AdministrationConnectionString(string policy = RootPolicy) => Connection(AdministrationPort, policy);

    private string Connection(int port, string policy)
    {
        var key = Policies.First(p => p.Name == policy).Key;
        return $"Endpoint=sb://127.0.0.1:{port};SharedAccessKeyName={policy};SharedAccessKey={key};UseDevelopmentEmulator=true";
    }

    public void Dispose()
    {
        administration.Dispose();
        amqp.Dispose();
        broker.Dispose();
    }

    private static string NewKey() => Convert.ToBase64String(System.Security.Cryptography.RandomNumberGenerator.GetBytes(32));

    private static int FreePort()
    {
        using var probe = new TcpListener(IPAddress.Loopback, 0);
        probe.Start();
        return ((IPEndPoint)probe.LocalEndpoint).Port;
    }
}
