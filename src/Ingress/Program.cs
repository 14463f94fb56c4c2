using Queue.Hosting.Security;
using Queue.Ingress;

var builder = Queue.Hosting.QueueApplication.CreateBuilder(args);
builder.AddQueueServiceDefaults();
builder.AddQueueAdapters();
builder.AddIngress();

var app = builder.Build();
app.UseExceptionHandler();
app.UseStatusCodePages();
app.UseDashboard();
app.UseQueueAuth();
app.MapQueueDefaultEndpoints();
app.MapJobsApi();
app.MapBlobsApi();
app.MapDashboardApi();
app.MapScaleApi();
app.MapOpenApi().RequireAuthorization(QueuePolicies.Read);
app.Run();
